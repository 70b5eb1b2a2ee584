from container.cli import main

main()
