"""Index generations: one collection per model under the alias, built beside the live one
by replaying the input topic, checked, then promoted (``catalens index``)."""
