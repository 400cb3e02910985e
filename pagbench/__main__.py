from pagbench.cli import main

main()
