from csa_cli.cli import main

main()
