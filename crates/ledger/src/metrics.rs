//! Prometheus metrics (`GET /metrics`, text format, via prometheus-client).
//! Counters and the latency histogram are updated on the request path; the
//! gauges describing the log, the disk and the process are read at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocationLabel {
    pub location: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EscalationLabels {
    pub severity: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JurisdictionLabel {
    pub jurisdiction: String,
}

/// Incidents (docs/incidents.md).
pub struct IncidentMetrics {
    /// Not yet resolved, by severity (set at scrape time from the state).
    pub open: Family<SeverityLabel, Gauge>,
    pub resolved: Family<SeverityLabel, Counter>,
    pub escalations: Family<EscalationLabels, Counter>,
    pub time_to_acknowledge: Family<SeverityLabel, Histogram>,
    pub time_to_resolve: Family<SeverityLabel, Histogram>,
    pub breach_deadlines_missed: Family<JurisdictionLabel, Counter>,
    /// Webhook notifications given up after their last attempt.
    pub notifications_failed: Counter,
    /// Requests refused (401, 403, 429) that the burst detector counted.
    pub refused_requests: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComplianceLabels {
    pub tenant: String,
    pub framework: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComplianceFindingLabels {
    pub tenant: String,
    pub framework: String,
    pub severity: String,
}

/// Scheduled compliance checks (docs/reports.md, "Scheduled checks").
pub struct ComplianceMetrics {
    /// Findings of each tenant's last check, by severity.
    pub findings: Family<ComplianceFindingLabels, Gauge>,
    /// When each tenant's last check ended its period (unix seconds).
    pub last_check: Family<ComplianceLabels, Gauge>,
    pub checks: Counter,
    pub archives: Counter,
    /// Checks or archives that could not be completed (logged as errors).
    pub failed: Counter,
}

impl ComplianceMetrics {
    /// `tenant` is a label already ([`Metrics::tenant_label`]).
    pub fn set_findings(&self, tenant: &str, framework: &str, severity: &str, n: i64) {
        self.findings
            .get_or_create(&ComplianceFindingLabels {
                tenant: tenant.into(),
                framework: framework.into(),
                severity: severity.into(),
            })
            .set(n);
    }

    pub fn set_last_check(&self, tenant: &str, framework: &str, unix: i64) {
        self.last_check
            .get_or_create(&ComplianceLabels {
                tenant: tenant.into(),
                framework: framework.into(),
            })
            .set(unix);
    }
}

/// Seconds to minutes to days: 10 s .. about 2 weeks.
fn response_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(10.0, 2.5, 14)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessLabel {
    pub witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuorumLabel {
    pub quorum: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Most distinct tenants that label series; the rest count as [`OTHER_LABEL`].
pub const MAX_TENANT_LABELS: usize = 1000;
/// The tenant label of input refused before its tenant could be trusted.
pub const REFUSED_LABEL: &str = "refused";
/// The tenant label beyond [`MAX_TENANT_LABELS`].
pub const OTHER_LABEL: &str = "other";

/// Everything `/metrics` reports.
pub struct Metrics {
    registry: Registry,
    /// Receipt of a request to its durable acknowledgement.
    pub latency: Histogram,
    processed: Family<TenantLabel, Counter>,
    failed: Family<FailureLabels, Counter>,
    tenant_labels: std::sync::Mutex<std::collections::HashSet<String>>,
    pub violations: Family<ViolationLabels, Counter>,
    /// Violations resolved through the lifecycle API, by severity.
    pub violations_resolved: Family<SeverityLabel, Counter>,
    pub incidents: IncidentMetrics,
    pub compliance: ComplianceMetrics,
    /// Logged events the policy engine never saw because its queue was full.
    pub policy_events_dropped: Counter,
    /// Changes to the policy file that did not load (the previous rules stay).
    pub policy_reload_failures: Counter,
    pub verification_failures: Counter,
    /// Blobs (out-of-line content) written, and their bytes of content.
    pub blobs_written: Counter,
    /// `trail.access` records appended (each merges a second of one reader's accesses).
    pub access_records: Counter,
    pub blob_bytes_written: Counter,
    /// Reads that found a blob missing or not matching its commitment.
    pub blob_integrity_failures: Counter,
    /// The tree size the last completed background scrub checked.
    pub scrubbed_size: Gauge,
    pub request_bytes: Counter,
    pub response_bytes: Counter,
    pub recovery_seconds: FloatGauge,
    queue_depth: Gauge,
    /// 1 on the node that integrates and publishes (always, on one node).
    pub publisher: Gauge,
    /// The publisher lease of a shared log: its term, and seconds until it
    /// expires as this node last read it (negative: nobody holds it).
    pub lease_term: Gauge,
    pub lease_remaining: FloatGauge,
    pub fenced_writes: Counter,
    backup_age_seconds: Family<LocationLabel, FloatGauge>,
    backup_max_age_seconds: Family<LocationLabel, FloatGauge>,
    backup_last_success: Family<LocationLabel, Gauge>,
    backup_failures: Family<LocationLabel, Counter>,
    /// 1 after a flush of the keyring failed: no data key is used until restart.
    pub keyring_flush_failed: Gauge,
    /// Entries durable in the log but not yet in the search index.
    pub index_lag: Gauge,
    pub indexed_size: Gauge,
    tree_size: Gauge,
    sequenced_size: Gauge,
    checkpoint_age: FloatGauge,
    /// Per witness: the size it last cosigned, when, and failed submissions.
    pub witness_size: Family<WitnessLabel, Gauge>,
    pub witness_cosigned_at: Family<WitnessLabel, Gauge>,
    pub witness_failures: Family<WitnessLabel, Counter>,
    /// The newest checkpoint the policy's quorum cosigned (only with a policy).
    pub quorum_size: Family<QuorumLabel, Gauge>,
    pub quorum_cosigned_at: Family<QuorumLabel, Gauge>,
    disk_used: Gauge,
    disk_free: Gauge,
    disk_usage_ratio: FloatGauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
    memory_total: Gauge,
    /// Admission control: requests shed, work in flight and its budget.
    pub admission: crate::admission::AdmissionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        r.register(
            "aiaudit_event_processing_latency_seconds",
            "Time from receiving an ingest request to its durable acknowledgement",
            latency.clone(),
        );
        let processed = Family::<TenantLabel, Counter>::default();
        r.register(
            "aiaudit_events_processed",
            "Events durably appended, by tenant",
            processed.clone(),
        );
        let failed = Family::<FailureLabels, Counter>::default();
        r.register(
            "aiaudit_events_failed",
            "Events refused or not acknowledged, by tenant and reason",
            failed.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        r.register(
            "aiaudit_violations_detected",
            "Policy violations detected, by rule and severity",
            violations.clone(),
        );
        let violations_resolved = Family::<SeverityLabel, Counter>::default();
        r.register(
            "aiaudit_violations_resolved",
            "Policy violations resolved by an auditor, by severity",
            violations_resolved.clone(),
        );
        let incidents = IncidentMetrics {
            open: Family::default(),
            resolved: Family::default(),
            escalations: Family::default(),
            time_to_acknowledge: Family::new_with_constructor(
                || Histogram::new(response_buckets()),
            ),
            time_to_resolve: Family::new_with_constructor(|| Histogram::new(response_buckets())),
            breach_deadlines_missed: Family::default(),
            notifications_failed: Counter::default(),
            refused_requests: Counter::default(),
        };
        // Every series present from the start (at 0), so that `increase()`
        // in alert rules sees the first escalation or missed deadline.
        for severity in ["critical", "high", "medium", "low"] {
            let label = SeverityLabel {
                severity: severity.into(),
            };
            let _ = incidents.open.get_or_create(&label);
            let _ = incidents.resolved.get_or_create(&label);
            for reason in ["response_deadline_missed", "escalation_time"] {
                let _ = incidents.escalations.get_or_create(&EscalationLabels {
                    severity: severity.into(),
                    reason: reason.into(),
                });
            }
        }
        for jurisdiction in ["ng", "ke", "za", "eu"] {
            let _ = incidents
                .breach_deadlines_missed
                .get_or_create(&JurisdictionLabel {
                    jurisdiction: jurisdiction.into(),
                });
        }
        r.register(
            "aiaudit_incidents_open",
            "Incidents not yet resolved, by severity",
            incidents.open.clone(),
        );
        r.register(
            "aiaudit_incidents_resolved",
            "Incidents resolved, by severity",
            incidents.resolved.clone(),
        );
        r.register(
            "aiaudit_incident_escalations",
            "Incident escalations (response deadline missed, escalation time reached), by severity and reason",
            incidents.escalations.clone(),
        );
        r.register(
            "aiaudit_incident_time_to_acknowledge_seconds",
            "From opening to acknowledgement, by severity",
            incidents.time_to_acknowledge.clone(),
        );
        r.register(
            "aiaudit_incident_time_to_resolve_seconds",
            "From opening to resolution, by severity",
            incidents.time_to_resolve.clone(),
        );
        r.register(
            "aiaudit_breach_deadlines_missed",
            "Breach notification deadlines passed with no notification logged, by jurisdiction",
            incidents.breach_deadlines_missed.clone(),
        );
        r.register(
            "aiaudit_incident_notifications_failed",
            "Incident webhook notifications given up after their last attempt",
            incidents.notifications_failed.clone(),
        );
        r.register(
            "aiaudit_refused_requests",
            "Requests refused with 401, 403 or 429 (the burst detector's input)",
            incidents.refused_requests.clone(),
        );
        let compliance = ComplianceMetrics {
            findings: Family::default(),
            last_check: Family::default(),
            checks: Counter::default(),
            archives: Counter::default(),
            failed: Counter::default(),
        };
        r.register(
            "aiaudit_compliance_findings",
            "Findings of each tenant's last scheduled compliance check, by framework and severity",
            compliance.findings.clone(),
        );
        r.register(
            "aiaudit_compliance_last_check_timestamp_seconds",
            "End of the period of each tenant's last scheduled compliance check (unix time)",
            compliance.last_check.clone(),
        );
        r.register(
            "aiaudit_compliance_checks",
            "Scheduled compliance checks logged",
            compliance.checks.clone(),
        );
        r.register(
            "aiaudit_compliance_archives",
            "Compliance report archives written to the backup locations",
            compliance.archives.clone(),
        );
        r.register(
            "aiaudit_compliance_failures",
            "Scheduled compliance checks or archives that failed",
            compliance.failed.clone(),
        );
        let policy_events_dropped = Counter::default();
        r.register(
            "aiaudit_policy_events_dropped",
            "Logged events not evaluated by the policy engine because its queue was full",
            policy_events_dropped.clone(),
        );
        let policy_reload_failures = Counter::default();
        r.register(
            "aiaudit_policy_reload_failures",
            "Changes to the policy file that did not load; the previous rules stay in force",
            policy_reload_failures.clone(),
        );
        let verification_failures = Counter::default();
        let access_records = Counter::default();
        r.register(
            "aiaudit_access_records",
            "trail.access records the ledger appended: reads, searches, exports and reports by tokens, merged per second",
            access_records.clone(),
        );
        let blobs_written = Counter::default();
        r.register(
            "aiaudit_blobs_written",
            "Event members stored out of line as blobs, each durable before its entry",
            blobs_written.clone(),
        );
        let blob_bytes_written = Counter::default();
        r.register(
            "aiaudit_blob_content_bytes_written",
            "Bytes of content (canonical JSON, before compression) stored as blobs",
            blob_bytes_written.clone(),
        );
        let blob_integrity_failures = Counter::default();
        r.register(
            "aiaudit_blob_integrity_failures",
            "Reads that found a blob missing or not matching the commitment its entry logs (never served)",
            blob_integrity_failures.clone(),
        );
        let scrubbed_size = Gauge::default();
        r.register(
            "aiaudit_scrubbed_size",
            "Tree size the last completed background scrub checked",
            scrubbed_size.clone(),
        );
        r.register(
            "aiaudit_verification_failures",
            "Checks of the log's own integrity that failed (recovery, checkpoint signatures)",
            verification_failures.clone(),
        );
        let request_bytes = Counter::default();
        r.register(
            "aiaudit_network_receive_bytes",
            "HTTP request body bytes received",
            request_bytes.clone(),
        );
        let response_bytes = Counter::default();
        r.register(
            "aiaudit_network_transmit_bytes",
            "HTTP response body bytes sent",
            response_bytes.clone(),
        );
        let recovery_seconds = FloatGauge::default();
        r.register(
            "aiaudit_recovery_time_seconds",
            "Duration of the last crash recovery at start",
            recovery_seconds.clone(),
        );
        let publisher = Gauge::default();
        r.register(
            "aiaudit_publisher",
            "1 if this node integrates and publishes checkpoints (on a shared log, exactly one node should)",
            publisher.clone(),
        );
        let lease_term = Gauge::default();
        r.register(
            "aiaudit_publisher_lease_term",
            "Term of the publisher lease of a shared log (moves on at every takeover)",
            lease_term.clone(),
        );
        let lease_remaining = FloatGauge::default();
        r.register(
            "aiaudit_publisher_lease_remaining_seconds",
            "Seconds until the publisher lease of a shared log expires, as this node last read it; 0 or less: no node holds a valid lease",
            lease_remaining.clone(),
        );
        let fenced_writes = Counter::default();
        r.register(
            "aiaudit_publisher_fenced_writes",
            "Publisher writes of this node the database refused because another node holds a newer lease term",
            fenced_writes.clone(),
        );
        let queue_depth = Gauge::default();
        r.register(
            "aiaudit_event_queue_depth",
            "Events acknowledged but not yet in a published checkpoint",
            queue_depth.clone(),
        );
        let backup_age_seconds = Family::<LocationLabel, FloatGauge>::default();
        r.register(
            "aiaudit_backup_age_seconds",
            "Time since the last backup that was taken and verified, by location",
            backup_age_seconds.clone(),
        );
        let backup_max_age_seconds = Family::<LocationLabel, FloatGauge>::default();
        r.register(
            "aiaudit_backup_max_age_seconds",
            "Oldest the last good backup may be under the schedule, by location",
            backup_max_age_seconds.clone(),
        );
        let backup_last_success = Family::<LocationLabel, Gauge>::default();
        r.register(
            "aiaudit_backup_last_result_success",
            "1 if the last backup attempt to the location succeeded and verified, 0 if it failed",
            backup_last_success.clone(),
        );
        let backup_failures = Family::<LocationLabel, Counter>::default();
        r.register(
            "aiaudit_backup_failures",
            "Backup attempts that failed, by location",
            backup_failures.clone(),
        );
        let keyring_flush_failed = Gauge::default();
        r.register(
            "aiaudit_keyring_flush_failed",
            "1 after a flush of the keyring failed: every sealed event is refused until the ledger restarts",
            keyring_flush_failed.clone(),
        );
        let index_lag = Gauge::default();
        r.register(
            "aiaudit_index_lag_events",
            "Entries in the log not yet in the search index",
            index_lag.clone(),
        );
        let indexed_size = Gauge::default();
        r.register(
            "aiaudit_indexed_size",
            "Entries covered by the search index",
            indexed_size.clone(),
        );
        let tree_size = Gauge::default();
        r.register(
            "aiaudit_tree_size",
            "Size of the latest published checkpoint",
            tree_size.clone(),
        );
        let sequenced_size = Gauge::default();
        r.register(
            "aiaudit_sequenced_size",
            "Events durably logged",
            sequenced_size.clone(),
        );
        let witness_size = Family::<WitnessLabel, Gauge>::default();
        r.register(
            "aiaudit_witness_cosigned_size",
            "Size of the latest checkpoint each witness cosigned",
            witness_size.clone(),
        );
        let witness_cosigned_at = Family::<WitnessLabel, Gauge>::default();
        r.register(
            "aiaudit_witness_cosigned_timestamp_seconds",
            "When each witness last cosigned (its cosignature's timestamp)",
            witness_cosigned_at.clone(),
        );
        let witness_failures = Family::<WitnessLabel, Counter>::default();
        r.register(
            "aiaudit_witness_failures",
            "Checkpoint submissions to a witness that did not bring a valid cosignature",
            witness_failures.clone(),
        );
        let quorum_size = Family::<QuorumLabel, Gauge>::default();
        r.register(
            "aiaudit_witness_quorum_size",
            "Size of the newest checkpoint the witness policy's quorum cosigned",
            quorum_size.clone(),
        );
        let quorum_cosigned_at = Family::<QuorumLabel, Gauge>::default();
        r.register(
            "aiaudit_witness_quorum_timestamp_seconds",
            "When the witness policy's quorum last completed a cosigned checkpoint",
            quorum_cosigned_at.clone(),
        );
        let checkpoint_age = FloatGauge::default();
        r.register(
            "aiaudit_checkpoint_age_seconds",
            "Age of the latest published checkpoint",
            checkpoint_age.clone(),
        );
        let disk_used = Gauge::default();
        r.register(
            "aiaudit_data_dir_used_bytes",
            "Bytes used on the data directory's file system",
            disk_used.clone(),
        );
        let disk_free = Gauge::default();
        r.register(
            "aiaudit_data_dir_free_bytes",
            "Bytes available on the data directory's file system",
            disk_free.clone(),
        );
        let disk_usage_ratio = FloatGauge::default();
        r.register(
            "aiaudit_data_dir_usage_ratio",
            "Used fraction of the data directory's file system",
            disk_usage_ratio.clone(),
        );
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        r.register(
            "process_cpu_seconds",
            "User and system CPU time of the process",
            cpu_seconds.clone(),
        );
        let resident_bytes = Gauge::default();
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            resident_bytes.clone(),
        );
        let open_fds = Gauge::default();
        r.register(
            "process_open_fds",
            "Open file descriptors of the process",
            open_fds.clone(),
        );
        let memory_total = Gauge::default();
        r.register(
            "aiaudit_machine_memory_bytes",
            "Memory of the machine",
            memory_total.clone(),
        );
        // Fixed for the process's life: set once, kept by the registry.
        let cpus: Gauge = Gauge::default();
        cpus.set(std::thread::available_parallelism().map_or(1, |n| n.get()) as i64);
        r.register(
            "aiaudit_machine_cpus",
            "CPUs available to the process",
            cpus.clone(),
        );
        let admission = crate::admission::AdmissionMetrics::default();
        // Both reasons exist from the start at 0, so rate() sees the first shed.
        for reason in [crate::admission::SHED_BUDGET, crate::admission::SHED_SHARE] {
            let _ = admission
                .shed
                .get_or_create(&crate::admission::ReasonLabel {
                    reason: reason.into(),
                });
        }
        r.register(
            "aiaudit_requests_shed",
            "Ingest requests refused before their body was read, by reason: memory_budget (503) or credential_share (429)",
            admission.shed.clone(),
        );
        r.register(
            "aiaudit_inflight_bytes",
            "Estimated memory held by ingest requests in flight",
            admission.inflight_bytes.clone(),
        );
        r.register(
            "aiaudit_inflight_requests",
            "Ingest requests in flight (admitted, not yet answered)",
            admission.inflight_requests.clone(),
        );
        r.register(
            "aiaudit_inflight_budget_bytes",
            "The memory budget for ingest requests in flight",
            admission.budget_bytes.clone(),
        );
        Metrics {
            registry: r,
            latency,
            processed,
            failed,
            tenant_labels: Default::default(),
            violations,
            violations_resolved,
            incidents,
            compliance,
            policy_events_dropped,
            policy_reload_failures,
            verification_failures,
            blobs_written,
            access_records,
            blob_bytes_written,
            blob_integrity_failures,
            scrubbed_size,
            request_bytes,
            response_bytes,
            recovery_seconds,
            queue_depth,
            publisher,
            lease_term,
            lease_remaining,
            fenced_writes,
            backup_age_seconds,
            backup_max_age_seconds,
            backup_last_success,
            backup_failures,
            keyring_flush_failed,
            index_lag,
            indexed_size,
            tree_size,
            sequenced_size,
            checkpoint_age,
            witness_size,
            witness_cosigned_at,
            witness_failures,
            quorum_size,
            quorum_cosigned_at,
            disk_used,
            disk_free,
            disk_usage_ratio,
            cpu_seconds,
            resident_bytes,
            open_fds,
            memory_total,
            admission,
        }
    }

    /// Records the outcome of a backup attempt to `location`.
    pub fn backup_result(&self, location: &str, ok: bool) {
        let l = LocationLabel {
            location: location.to_string(),
        };
        self.backup_last_success.get_or_create(&l).set(ok as i64);
        if !ok {
            self.backup_failures.get_or_create(&l).inc();
        }
    }

    /// Age of the last good backup at `location`, and the most it may be.
    pub fn backup_age(&self, location: &str, age: f64, max_age: f64) {
        let l = LocationLabel {
            location: location.to_string(),
        };
        self.backup_age_seconds.get_or_create(&l).set(age);
        self.backup_max_age_seconds.get_or_create(&l).set(max_age);
    }

    /// Counts events refused for `reason` (a problem type slug).
    /// Counts refused or unacknowledged events. `tenant` must be a
    /// validated tenant (or `None`: counted as `refused`); `reason` is a
    /// problem type of ours.
    pub fn fail(&self, tenant: Option<&str>, reason: &str, events: u64) {
        self.failed
            .get_or_create(&FailureLabels {
                tenant: tenant.map_or_else(|| REFUSED_LABEL.to_string(), |t| self.tenant_label(t)),
                reason: reason.to_string(),
            })
            .inc_by(events.max(1));
    }

    /// Counts events durably appended for a validated tenant.
    /// Counts blobs written for a batch.
    pub fn blobs_written(&self, blobs: u64, content_bytes: u64) {
        self.blobs_written.inc_by(blobs);
        self.blob_bytes_written.inc_by(content_bytes);
    }

    pub fn processed(&self, tenant: &str, events: u64) {
        self.processed
            .get_or_create(&TenantLabel {
                tenant: self.tenant_label(tenant),
            })
            .inc_by(events);
    }

    /// The label of a validated tenant: itself while fewer than
    /// [`MAX_TENANT_LABELS`] tenants are labelled, then `other`, so no caller
    /// can grow the series without bound.
    pub fn tenant_label(&self, tenant: &str) -> String {
        let mut seen = self.tenant_labels.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(tenant) {
            return tenant.to_string();
        }
        if seen.len() < MAX_TENANT_LABELS {
            seen.insert(tenant.to_string());
            return tenant.to_string();
        }
        OTHER_LABEL.to_string()
    }

    /// Reads the gauges and renders the text format.
    pub fn render(
        &self,
        data_dir: &Path,
        tree_size: u64,
        sequenced: u64,
        checkpoint_age: f64,
    ) -> String {
        self.tree_size.set(tree_size as i64);
        self.sequenced_size.set(sequenced as i64);
        self.queue_depth
            .set(sequenced.saturating_sub(tree_size) as i64);
        self.checkpoint_age.set(checkpoint_age);
        if let Ok(fs) = rustix::fs::statvfs(data_dir) {
            let total = fs.f_blocks.saturating_mul(fs.f_frsize);
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            let used = total.saturating_sub(fs.f_bfree.saturating_mul(fs.f_frsize));
            self.disk_used.set(used as i64);
            self.disk_free.set(free as i64);
            if used + free > 0 {
                self.disk_usage_ratio
                    .set(used as f64 / (used + free) as f64);
            }
        }
        if let Some(p) = process_stats() {
            let seen = self.cpu_seconds.get();
            if p.cpu_seconds > seen {
                self.cpu_seconds.inc_by(p.cpu_seconds - seen);
            }
            self.resident_bytes.set(p.resident_bytes as i64);
            self.open_fds.set(p.open_fds as i64);
            self.memory_total.set(p.machine_memory as i64);
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: u64,
    machine_memory: u64,
}

/// From /proc (Linux): CPU time, resident memory, open files, machine memory.
fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let page = rustix::param::page_size() as u64;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let machine_memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) / ticks,
        resident_bytes: rss_pages * page,
        open_fds,
        machine_memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard and the alert rules use only metrics that exist
    /// (or recording rules defined next to them).
    #[test]
    fn dashboards_and_rules_name_real_metrics() {
        let m = Metrics::new();
        m.latency.observe(0.001);
        m.processed("t", 1);
        m.fail(Some("t"), "r", 1);
        m.violations
            .get_or_create(&ViolationLabels {
                rule: "r".into(),
                severity: "s".into(),
            })
            .inc();
        // A backup location, so its series are rendered too.
        let location = LocationLabel {
            location: "file:///backups".into(),
        };
        m.backup_age_seconds.get_or_create(&location).set(1.0);
        m.backup_max_age_seconds.get_or_create(&location).set(1.0);
        m.backup_last_success.get_or_create(&location).set(1);
        m.backup_failures.get_or_create(&location).inc();
        let text = m.render(Path::new("."), 1, 1, 0.0);
        let dashboard = include_str!("../../../deploy/grafana/aiaudit-ledger.json");
        let rules = include_str!("../../../deploy/prometheus/alerts.yml");
        for source in [dashboard, rules] {
            for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            {
                let metric = word.trim_end_matches("_bucket");
                // The witness's own metrics come from `aiaudit witness`
                // (checked in crates/witness), not from the ledger.
                let is_metric = (metric.starts_with("aiaudit_") || metric.starts_with("process_"))
                    && !metric.contains(':')
                    && !metric.starts_with("aiaudit_witness_evidence");
                if is_metric {
                    assert!(text.contains(metric), "{metric} is not exported");
                }
                if word.starts_with("aiaudit:") {
                    assert!(
                        rules.contains(&format!("record: {word}")),
                        "{word} is not a recording rule"
                    );
                }
            }
        }
    }

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.latency.observe(0.003);
        m.processed("acme", 5);
        m.fail(Some("acme"), "invalid-events", 2);
        let text = m.render(Path::new("."), 10, 12, 0.5);
        for needle in [
            "aiaudit_event_processing_latency_seconds_bucket",
            "aiaudit_events_processed_total{tenant=\"acme\"} 5",
            "aiaudit_events_failed_total{tenant=\"acme\",reason=\"invalid-events\"} 2",
            "aiaudit_event_queue_depth 2",
            "aiaudit_tree_size 10",
            "aiaudit_checkpoint_age_seconds 0.5",
            "process_resident_memory_bytes",
            "process_open_fds",
            "aiaudit_data_dir_free_bytes",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn tenant_labels_are_capped_and_refused_input_has_a_fixed_label() {
        let m = Metrics::new();
        for i in 0..MAX_TENANT_LABELS + 10 {
            m.processed(&format!("t{i}"), 1);
        }
        m.fail(None, "forbidden", 3);
        let text = m.render(Path::new("."), 0, 0, 0.0);
        let series = text
            .lines()
            .filter(|l| l.starts_with("aiaudit_events_processed_total{"))
            .count();
        assert_eq!(series, MAX_TENANT_LABELS + 1);
        assert!(text.contains("aiaudit_events_processed_total{tenant=\"other\"} 10"));
        assert!(
            text.contains("aiaudit_events_failed_total{tenant=\"refused\",reason=\"forbidden\"} 3")
        );
    }
}
