from lambdagate.cli import main

raise SystemExit(main())
