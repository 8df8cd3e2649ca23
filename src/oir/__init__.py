"""oir: one instruction-following policy for Craftax, trained without human instruction labels.

A relabeler reads what the agent did and turns failed experience into the subtasks it really
achieved (open-ended instruction relabeling, arXiv 2506.20061). The stages of the loop, one
module each: :mod:`oir.env` (Craftax with tasks), :mod:`oir.events` (counters),
:mod:`oir.narrate` (event text), :mod:`oir.relabel` and :mod:`oir.llm` (relabelers, verified
against :mod:`oir.tasks`), :mod:`oir.buffer` (instructions), :mod:`oir.encode` (text vectors),
:mod:`oir.pqn` / :mod:`oir.ppo` (learners), :mod:`oir.train` (the loop), :mod:`oir.evaluate`
(suites). The command line is :mod:`oir.cli`.
"""
