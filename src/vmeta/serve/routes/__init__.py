"""The routers of `vmeta serve`; `create_app` includes them all."""
