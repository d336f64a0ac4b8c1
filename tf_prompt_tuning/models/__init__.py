"""Task models and banks, on the common base `PromptTask`."""
