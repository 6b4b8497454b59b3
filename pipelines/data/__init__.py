"""Annotations in, TFRecords out: conversion, images, augmentation and the training input."""
