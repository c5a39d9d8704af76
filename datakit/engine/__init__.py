"""The audit engine: batches of records through the per-record stage (`batch.audit_batch`), their findings and state
spilled to disk (`spill`), then the end of the audit over what was kept (`local.finish`). `local` runs it on this
machine; `ray_engine` on a Ray cluster."""
