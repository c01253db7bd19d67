"""A TCP proxy on 127.0.0.1 that holds every piece of a client's request for a fixed delay before
passing it on (a store tens of milliseconds away, as a cloud bucket is from a laptop):

  python lagproxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS
"""
import asyncio, sys
LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

async def pipe(r, w, delay):
    try:
        while True:
            data = await r.read(1 << 16)
            if not data:
                break
            if delay:
                await asyncio.sleep(delay)
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass

async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(pipe(cr, sw, DELAY), pipe(sr, cw, 0))

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
