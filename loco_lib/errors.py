"""The one exception type for user mistakes: the CLI prints its message as one line."""


class LocoError(ValueError):
    """A user-facing error: bad model name, bad layer index, empty prompt, unusable path, ..."""


class LocoWarning(UserWarning):
    """Something went wrong but loco recovered (a damaged cache entry computed again, ...)."""
