"""Repository tooling: package discovery, structure rules, releases, CI selection. Standard library only."""
