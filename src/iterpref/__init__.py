"""iterpref: IterPref (focal preference learning for code generation via iterative debugging) as a DVC pipeline."""

import os

# torch's GNU OpenMP threads spin at the end of every parallel region waiting for their partner
# (300,000 rounds by default); on a machine with more busy processes than cores the partner is
# often descheduled and a 2-thread decode spends most of its time spinning. A shorter spin costs
# nothing idle and numerics do not change (docs/benchmarks.md#make-test). libgomp reads it when
# torch loads it, so it is set here, before any stage imports torch; a value set outside wins.
os.environ.setdefault("GOMP_SPINCOUNT", "100000")
