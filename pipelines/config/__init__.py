"""Reading, checking and patching OD API pipeline.configs, and the typed view training uses."""
