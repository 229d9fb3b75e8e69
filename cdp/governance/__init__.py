"""Data governance: usage labels, policies that forbid labels for marketing actions, and consent.

:mod:`cdp.governance.policies` finds every destination that would export a labelled field, or activate an
audience whose rule reads one, for an action a policy forbids it for (``cdp validate`` and the export step
both ask it); :mod:`cdp.governance.consent` turns a destination's consent purposes into the profile column
that decides whether a person may be delivered.
"""
