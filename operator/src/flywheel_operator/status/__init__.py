"""Pure status logic: the spec + observed children -> status, conditions, phase, decisions."""
