"""`discoveryctl lab break`: faults for learners to diagnose with the lab's own tools.

``scenarios.py`` is the pure part: each scenario's symptom (never its cause),
the doctor checks it makes FAIL, and when it counts as fixed. ``faults.py``
injects, undoes and observes them on the local lab; ``command.py`` is the
verbs. One write-up per scenario sits beside them (``<name>.md``): the
symptom, how to diagnose it, the cause, the fix, and what produces it in
real life.
"""
