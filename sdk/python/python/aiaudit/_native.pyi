# Type stubs of the native module (src/lib.rs). Not a public API: use aiaudit.Emitter.
from typing import Any, List, Mapping, Optional, Tuple

class AuditError(Exception): ...

class InvalidEvent(ValueError):
    field: str
    errors: List[Tuple[str, str]]

class SpoolFailure(OSError): ...
class QueueFull(AuditError): ...
class EmitterClosed(AuditError): ...

class NativeEmitter:
    def __init__(
        self,
        url: str,
        token: Optional[str],
        spool_dir: Optional[str],
        signing_key: Optional[str],
        signature_format: str,
        ca_cert_pem: Optional[bytes],
        on_full: str,
        max_spool_bytes: int,
        batch_size: int,
        batch_interval: float,
        queue_capacity: int,
        max_backoff: float,
        max_event_bytes: int,
        compression: str,
    ) -> None: ...
    def emit(self, event: Mapping[str, object]) -> str: ...
    def flush(self, timeout: float) -> bool: ...
    def sync(self) -> bool: ...
    def close(self, timeout: float) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def counters(self) -> Tuple[int, int, int, int, int, int, int, int, int, int]: ...
    def last_error(self) -> Optional[str]: ...
    def abandon_after_fork(self) -> None: ...

def validate_event(event: Mapping[str, object], max_event_bytes: int = ...) -> str: ...
def uuid7() -> str: ...
def generate_signing_key(name: str) -> Tuple[str, str]: ...
def map_log_record(
    resource: Mapping[str, Any],
    scope_name: Optional[str],
    scope_version: Optional[str],
    attributes: Mapping[str, Any],
    body: Any,
    event_name: Optional[str],
    severity_text: Optional[str],
    time_unix_nano: int,
    observed_time_unix_nano: int,
    trace_id: int,
    span_id: int,
) -> str: ...
