"""Many animations from one manifest: ``flipsketch batch MANIFEST -o OUTDIR``.

A manifest is a CSV or JSONL file with one row per job (``sketch``, ``prompt``, ``output``
and any sampler or output option as a column). The whole manifest is checked before the first
job runs (``manifest``); then each process loads the model once and runs its share of the
jobs, skipping those finished by an earlier run with the same inputs (``runner``).
``--processes N`` starts the processes through ``accelerate launch`` (``launch``).

    from flipsketch.batch import read_manifest, run_batch

    result = run_batch(read_manifest("jobs.csv"), "out")
    print(result.count("done"), "done,", result.count("failed"), "failed")

Modules: ``manifest`` (reading and checking rows, fingerprints), ``runner`` (sharding,
resuming, the report), ``launch`` (the ``accelerate launch`` command line).
"""

from flipsketch.batch.manifest import Job, Manifest, ManifestError, ModelChoice, read_manifest
from flipsketch.batch.runner import (
    REPORT,
    BatchResult,
    JobReport,
    Reporter,
    check_outdir,
    read_report,
    run_batch,
)

__all__ = ["REPORT", "BatchResult", "Job", "JobReport", "Manifest", "ManifestError",
           "ModelChoice", "Reporter", "check_outdir", "read_manifest", "read_report",
           "run_batch"]
