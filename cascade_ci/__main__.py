from cascade_ci.cli import main

main()
