"""vRouter front ends over the model (apps/vrouter/vrouter.py): the control socket (server.py),
`pypdk-vrouter` (cli.py) and its tables (show.py)."""
