"""Config, stages, artifact store, runner and the edgepipe CLI."""
