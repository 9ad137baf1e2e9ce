"""AI routing: the LLMBackend protocol, model resolution and the litellm backend."""
