"""SQL files of the API, loaded with importlib.resources."""
