"""Server processes: the supervisor that starts one process per core and replaces those that die,
connection balancing over one shared socket (a shared-memory load board), and per-process
randomness for request ids and default seeds.

May import: the standard library and itself only; ``app.__main__`` wires it to the app.
"""
