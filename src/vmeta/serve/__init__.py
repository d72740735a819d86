"""`vmeta serve`: the chat assistant web app and the OpenAI-compatible API."""
