"""Every output: results (human, JSON), progress, checklists."""
