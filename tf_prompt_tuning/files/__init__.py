"""Files: prompt files, SavedModel export, and atomic writes."""
