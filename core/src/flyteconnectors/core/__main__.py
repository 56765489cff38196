from flyteconnectors.core.cli import main

main()
