"""The paper's claims as data, each with a check that computes pass / fail from our results (RobustBench style).

A :class:`Claim` holds a statement of the paper, where it comes from, the paper's numbers and a check. Checks
read an :class:`Evidence`: one tidy table of every finished evaluation of a profile, the models' recipe fields,
the targeted-attack fractions and the benchmark files. :func:`collect_evidence` gathers it from the results
folders the chapters wrote and never runs an attack: a claim whose results are missing is "not run".

The same checks run on the paper's own tables (:func:`paper_evidence`): the paper column of the status table is
the check's summary of the paper's numbers, so ours and the paper's are stated the same way, and a check that
failed on the paper's own numbers would be a wrong check (the tests assert that they all pass).

At the default scale (DigitScenes, tiny models) only orderings can be compared with the paper: the numbers
differ by design. At paper scale :func:`paper_cells` also compares every number with the paper's within a
tolerance.

The package's parts: ``_types`` (claim, evidence, verdict, tolerances), ``_checks`` (one check per claim),
``_statements`` (the claims as data), ``_evidence`` (our results and the paper's tables as evidence),
``_benchmarks`` (the benchmark files) and ``_reports`` (status table, chapter verdicts, paper-scale cells).
"""

from robseg_lib.book.claims._benchmarks import (
    benchmark_machines,
    benchmark_path,
    benchmark_summary,
    benchmark_table,
    benchmark_timings,
    load_benchmarks,
    model_step_times,
)
from robseg_lib.book.claims._evidence import collect_evidence, paper_evidence
from robseg_lib.book.claims._reports import chapter_verdicts, paper_cells, status_table
from robseg_lib.book.claims._statements import CLAIMS
from robseg_lib.book.claims._types import (
    BENCHMARK_TARGETS,
    MATCH_TOL,
    MODEL_COLUMNS,
    ORDER_TOL,
    PAPER_VAL_IMAGES,
    RESULT_COLUMNS,
    ROBUST_IMAGE_COLUMNS,
    TARGETED_COLUMNS,
    Claim,
    Evidence,
    Verdict,
)

__all__ = [
    "BENCHMARK_TARGETS",
    "CLAIMS",
    "MATCH_TOL",
    "MODEL_COLUMNS",
    "ORDER_TOL",
    "PAPER_VAL_IMAGES",
    "RESULT_COLUMNS",
    "ROBUST_IMAGE_COLUMNS",
    "TARGETED_COLUMNS",
    "Claim",
    "Evidence",
    "Verdict",
    "benchmark_machines",
    "benchmark_path",
    "benchmark_summary",
    "benchmark_table",
    "benchmark_timings",
    "chapter_verdicts",
    "collect_evidence",
    "load_benchmarks",
    "model_step_times",
    "paper_cells",
    "paper_evidence",
    "status_table",
]
