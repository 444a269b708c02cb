from __future__ import annotations

import csv
import io

from runners.synthetic_text import support_tickets


def clear_tickets_csv(n: int = 160, seed: int = 5) -> bytes:
    """Unambiguous tickets: a model trained on them is confident."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(support_tickets(n, seed=seed, ambiguous_share=0.0))
    return out.getvalue().encode()
