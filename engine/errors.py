"""What commands raise. The web layer maps each to one HTTP status."""


class EngineError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(EngineError):
    status = 400


class Unauthorized(EngineError):
    """The acting user is unknown or deactivated."""
    status = 401


class NotFound(EngineError):
    status = 404


class Forbidden(EngineError):
    status = 403


class Conflict(EngineError):
    status = 409


class ValidationFailed(EngineError):
    status = 422

    def __init__(self, errors: dict[str, str], message: str = "invalid data"):
        super().__init__(message)
        self.errors = errors


class ProcessError(EngineError):
    """The process definition failed while running (an expression, a service). Nothing was saved.
    `where` is the BPMN id of the step that failed, when known."""
    status = 422

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.where = where


class RateLimited(EngineError):
    """Too soon: try again after `retry_after` seconds."""
    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
