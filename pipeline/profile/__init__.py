"""`edgepipe profile` and `edgepipe devices`: any model file on the host or on phones."""
