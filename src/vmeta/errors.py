"""One exception type for mistakes a person can fix; the CLI prints it as one sentence, no traceback."""


class UserError(Exception):
    """Bad input: the message names the file/row/field/parameter and says what to do."""
