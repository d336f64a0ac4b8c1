"""The prompt layers: one public layer a module, named after it."""
