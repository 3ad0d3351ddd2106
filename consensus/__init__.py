"""Slot authoring (Aura-style), header verification, and (later) finality and fork choice."""
