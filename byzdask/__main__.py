from byzdask.cli import main

main()
