"""SavedModel and TFLite export, their metadata, report, checks and the Android package."""
