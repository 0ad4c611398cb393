from decay_cli.cli import main

main()
