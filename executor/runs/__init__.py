"""Plans and run folders: turning a spec into a checked command (plan), the folder each run
gets (command.txt, plan.json, the dataset config, run.log, result.json, loss.jsonl), locks so
two runs never write the same folder, running a plan, and reading runs back (history).

May import every other room of the executor: this is where they meet.
"""
