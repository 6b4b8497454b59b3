"""Evaluation reports: pictures with boxes, error analysis and the report folder."""
