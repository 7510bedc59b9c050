"""`edgepipe batch`: matrices of jobs on warm local workers or on Ray."""
