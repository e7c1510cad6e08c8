"""The pure domain core: no Faust, no httpx, no clock. Time is always an argument."""
