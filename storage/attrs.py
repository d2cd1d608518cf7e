"""Names of the study and trial attributes the service writes (one place, so readers agree)."""

from __future__ import annotations

# Study user attribute: the StudySpec as JSON, written once by `spectune study create`.
SPEC = "spectune:spec"
# Study user attribute: the next worker index (seeds differ per worker).
NEXT_WORKER_INDEX = "spectune:next_worker_index"

# Trial system attribute: unix time of the owner's last sign of life (the journal's heartbeat).
LEASE = "spectune:lease"

# Trial user attributes, shown by `spectune study status` and optuna-dashboard.
WORKER_HOST = "worker_host"
WORKER_PID = "worker_pid"
WORKER_INDEX = "worker_index"
DEVICE = "device"
STARTED_AT = "started_at"
FAIL_REASON = "fail_reason"
RETRY_OF = "retry_of"
RETRY_REASON = "retry_reason"

# Trial user attributes written by the MGCN objective (read by export and the reports).
CONFIG = "config"  # the resolved RunConfig, as a dict
RESULT = "result"  # the trainer's result: best epoch, valid metrics, timings, history
TEST_METRICS = "test_metrics"  # of the best validation epoch; never the objective value
CHECKPOINT = "checkpoint"  # path of the trial's checkpoint
# mean training seconds per epoch so far, updated each epoch (pruned trials have a cost too)
EPOCH_SECONDS = "seconds_per_epoch"
