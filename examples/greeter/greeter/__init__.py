"""A tiny greeter."""


def greet(name: str, *, shout: bool = False) -> str:
    """Return a greeting for ``name``."""
    text = f"Hello, {name}!"
    return text.upper() if shout else text
