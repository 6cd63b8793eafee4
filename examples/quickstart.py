"""Correct answers you already have with the embedded demo corrector (offline, CPU).

    python examples/quickstart.py
"""
from aligner import Aligner

al = Aligner()  # no upstream: we pass answers ourselves; no corrector: the embedded demo model
pairs = [
    ("How can I reach you?", "Write to me at maria.lopez@example.org or call 415-555-0199."),
    ("What is 12 * 7?", "12 * 7 = 94."),
    ("How do I boil an egg?", "Put the egg in boiling water for nine minutes, then cool it in cold water."),
]
for c in al.correct_batch([q for q, _ in pairs], [a for _, a in pairs], progress=False):
    print(f"Q: {c.question}\nA: {c.answer}\nC: {c.correction}  (changed={c.changed})\n")
