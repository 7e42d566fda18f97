"""The one error every reader raises for an input it cannot read at all."""


class ReadError(ValueError):
    """An input that cannot be read; the message names the file (or message) and the reason.

    Each adapter raises its own subclass (``PhysioNetError``, ``FhirError``, ``Hl7Error``,
    ``StreamError``); callers that read any format catch this one."""
