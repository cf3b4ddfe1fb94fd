"""vRouter control: the operations (ops.py), the control socket (server.py) and pypdk-vrouter (cli.py)."""
