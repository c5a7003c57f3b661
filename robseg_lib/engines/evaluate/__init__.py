"""Resumable, shardable evaluation of a segmentation model under SEA (or any per-batch attack).

A long evaluation is split into fixed batches: batch ``i`` always covers images ``[i*b, (i+1)*b)``. Each
batch's per-image statistics (clean and per attack) are written atomically to ``out_dir/batch_<i>.pt``
next to a ``run.json`` that describes the settings. A restarted run checks that ``run.json`` agrees with
the requested settings (results of different settings are never mixed) and skips the finished batches.
Under ``torchrun`` (``torch.distributed`` initialised, or ``WORLD_SIZE > 1``) rank ``r`` processes batches
``r, r + world, ...``; after a barrier rank 0 concatenates every batch in batch order, computes SEA's
numbers and writes ``summary.json``. Attack randomness is seeded per (seed, batch index, attack), so the
numbers depend neither on the number of processes nor on interruptions.

Compared with the authors' release (the reference's defects page): statistics are stored per image and concatenated
by image index, so a partial last batch is scored against its own labels (D2); every random start is
seeded explicitly (D6); per-attack accuracy is reported both as the per-image mean and pooled (D23);
finished work is found and reused on restart (D24).

Layout of ``out_dir``::

    run.json          settings, model and data fingerprints, library version
    batch_00000.pt    {"clean": SegStats dict, "attacks": {name: SegStats dict}, "start", "stop", ...}
    ...
    summary.json      clean / per-attack / worst-case numbers (fractions) and per-image choices
    class_counts_*.pt cached pixel counts behind the MCE-Bal class weights

The package's parts: ``_evaluate`` (the loop), ``_run_state`` (run folder, fingerprints, batch files),
``_result`` (a finished run), ``_distributed`` (ranks), ``_class_weights`` (MCE-Bal weights), ``_attacks`` (attack
specs) and ``_profile`` (a profile's evaluation: :class:`Evaluation` and :func:`run`, the one entry point of the
notebooks and the command line).
"""

from robseg_lib.engines.evaluate._attacks import ATTACK_KINDS, SEED_ORDER, AttackSpec, attack_batch, parse_attack
from robseg_lib.engines.evaluate._class_weights import resolve_class_weights
from robseg_lib.engines.evaluate._evaluate import AttackFn, evaluate
from robseg_lib.engines.evaluate._profile import Evaluation, default_out_dir, profile_run_fields, run, validation_set
from robseg_lib.engines.evaluate._result import EvaluationResult, aggregate, load_results
from robseg_lib.engines.evaluate._run_state import RunMismatchError

__all__ = [
    "ATTACK_KINDS",
    "SEED_ORDER",
    "AttackFn",
    "AttackSpec",
    "Evaluation",
    "EvaluationResult",
    "RunMismatchError",
    "aggregate",
    "attack_batch",
    "default_out_dir",
    "evaluate",
    "load_results",
    "parse_attack",
    "profile_run_fields",
    "resolve_class_weights",
    "run",
    "validation_set",
]
