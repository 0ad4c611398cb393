from decay.cli import main

main()
