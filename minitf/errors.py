"""One exception type for everything a user can get wrong.

Every message names the thing at fault (a file, a line, a tensor, a config key) and says what to
do about it, so that a bad input never surfaces as a bare traceback from deep inside torch.
"""


class MinitfError(Exception):
    """A problem with the user's input, files or settings, explained in the message."""
