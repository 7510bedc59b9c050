"""The run machinery: job config, stage context, runner and store, and the sources of a job's model and data."""
