#!/usr/bin/env python3
"""Sends GenAI log records to an OTLP/HTTP endpoint with the real
OpenTelemetry Python SDK (LoggerProvider, BatchLogRecordProcessor,
OTLPLogExporter). Used by tests/e2e/otlp.rs.

usage: otlp_send.py ENDPOINT RUN COUNT [--gzip]

Every record carries the attribute run=RUN so the test can find it. Exits 0
only if every export succeeded; exit 77 if the SDK is not installed.
"""

import sys
import time

try:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
except ImportError as e:
    print(f"SKIPPED: OpenTelemetry Python SDK not installed ({e})")
    sys.exit(77)

try:  # The API's LogRecord (SDK >= 1.35); older SDKs only have their own.
    from opentelemetry._logs import LogRecord, SeverityNumber
except ImportError:  # pragma: no cover
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LogRecord


class RecordingExporter(OTLPLogExporter):
    """The OTLP exporter, remembering what each export returned."""

    results = []

    def export(self, batch):
        result = super().export(batch)
        RecordingExporter.results.append((len(batch), result))
        return result


def main():
    endpoint, run, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    gzip = "--gzip" in sys.argv[4:]
    resource = Resource.create({"service.name": "py-otel-e2e", "service.version": "1.0.0"})
    provider = LoggerProvider(resource=resource)
    exporter = RecordingExporter(
        endpoint=endpoint,
        timeout=10,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger("e2e.otlp_send", "0.1")
    base = time.time_ns()
    for i in range(count):
        logger.emit(
            LogRecord(
                timestamp=base + i,
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=f"inference {i}",
                event_name="gen_ai.client.inference.operation.details",
                attributes={
                    "run": run,
                    "seq": i,
                    "gen_ai.provider.name": "openai",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-x",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 10 + i,
                    "gen_ai.response.finish_reasons": ["stop"],
                },
            )
        )
    flushed = provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    sent = sum(n for n, r in RecordingExporter.results if r.name == "SUCCESS")
    failed = [r.name for _, r in RecordingExporter.results if r.name != "SUCCESS"]
    print(f"sent {sent} of {count} log records (flushed={flushed}, failures={failed})")
    return 0 if sent == count and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
