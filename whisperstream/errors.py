"""The root of whisperstream's own errors outside the event contract."""


class WhisperstreamError(Exception):
    """Base of every error this package raises on purpose."""


class SettingsError(WhisperstreamError):
    """A setting has a value the service cannot start with."""


class StackError(WhisperstreamError):
    """The local stack could not be started, checked or stopped."""


class PortInUseError(StackError):
    """A port the stack must listen on is already taken."""

    def __init__(self, service: str, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} (for {service}) is already in use")
        self.service = service
        self.port = port
