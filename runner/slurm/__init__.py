"""Running on a Slurm cluster with Slurm's own commands: the job a worker runs in (job.py), workers submitted as
batch jobs (launch.py), and one training spread over the nodes of a job's allocation (nodes.py)."""
